#' pyrmap: share large arrays between R and Python, and across R workers
#'
#' Two halves over one shared-memory core:
#' * [run_python()], [run_python_shared_data()] and [run_python_pipeline()]
#'   run Python scripts over R data without copies;
#' * the memshare-compatible parallel engine.
#'
#' Start with the vignette, `vignette("pyrmap", package = "pyrmap")`, and
#' [pyrmap_config()], which shows the Python interpreter pyrmap found (one
#' that imports numpy; see [pyrmap_python()]).
#'
#' Segments live in `/dev/shm` (or another segment directory, see
#' [pyrmap_segment_dir()]) as `pyrmap-<uid>-<pid>-...`; every call removes
#' its own, and `pyrmap gc` (see [pyrmap_command()]) removes those of crashed
#' sessions.
#'
#' @keywords internal
#' @useDynLib pyrmap, .registration = TRUE
"_PACKAGE"
