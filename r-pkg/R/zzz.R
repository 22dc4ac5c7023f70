.onUnload <- function(libpath) {
  library.dynam.unload("pyrmap", libpath)
}
