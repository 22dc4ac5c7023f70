#' pyrmap: share large arrays between R and Python, and across R workers
#'
#' Two halves over one shared-memory core:
#' * [run_python()], [run_python_shared_data()] and [run_python_pipeline()]
#'   run Python scripts over R data without copies;
#' * the memshare-compatible parallel engine.
#'
#' Segments live in `/dev/shm` as `pyrmap-<uid>-<pid>-...`; every call removes
#' its own, and `pyrmap gc` (see [pyrmap_command()]) removes those of crashed
#' sessions.
#'
#' @keywords internal
#' @useDynLib pyrmap, .registration = TRUE
"_PACKAGE"
