.onLoad <- function(libname, pkgname) {
  # Segments of this user's processes that died (killed, crashed) are removed
  # now: one look into each known segment directory.
  try(.pyrmap_remove_dead_segments(), silent = TRUE)
  # Pages this session registered are removed when R exits, and the default
  # cluster is stopped; crashed sessions' pages are reclaimed by gc instead.
  reg.finalizer(.state, function(e) {
    .release_all_pages()
    if (!is.null(e$cluster)) try(parallel::stopCluster(e$cluster), silent = TRUE)
  }, onexit = TRUE)
}

.onUnload <- function(libpath) {
  .release_all_pages()
  if (!is.null(.state$cluster)) try(parallel::stopCluster(.state$cluster), silent = TRUE)
  .state$cluster <- NULL
  library.dynam.unload("pyrmap", libpath)
}
