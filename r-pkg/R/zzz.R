.onLoad <- function(libname, pkgname) {
  # Segments of this user's processes that died (killed, crashed) are removed
  # now: one look into each known segment directory.
  try(.pyrmap_remove_dead_segments(), silent = TRUE)
  # Pages this session registered are removed when R exits, and the
  # engine's workers are stopped; crashed sessions' pages are reclaimed by
  # gc instead.
  reg.finalizer(.state, function(e) {
    .release_all_pages()
    .engine_close()
  }, onexit = TRUE)
}

.onUnload <- function(libpath) {
  .release_all_pages()
  .engine_close()
  library.dynam.unload("pyrmap", libpath)
}
