.onLoad <- function(libname, pkgname) {
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
