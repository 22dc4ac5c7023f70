# The end-to-end demo: R data -> shared memory -> Python -> back in R, no copies.
# Run by `make demo` (which installs the R package into build/Rlib first).
library(pyrmap)

here <- dirname(sub("^--file=", "", grep("^--file=", commandArgs(FALSE), value = TRUE)))
script <- function(name) file.path(here, name)

cat("Python interpreter:", pyrmap_python(), "\n\n")

# A matrix goes to Python as a 2-D column-major float64 array; plus_one.py
# returns data + 1, which comes back as a zero-copy view with the matrix's dims.
m <- matrix(as.numeric(1:6), nrow = 2, dimnames = list(c("a", "b"), c("x", "y", "z")))
cat("run_python(m, 'plus_one.py', 'float64'):\n")
print(run_python(m, script("plus_one.py"), "float64"))

# One shared input, several scripts (run at once with jobs = 2).
v <- c(3, 1, 4, 1, 5, 9, 2, 6)
cat("\nrun_python_shared_data(v, c('stats_mean.py', 'stats_max.py'), jobs = 2):\n")
str(run_python_shared_data(v, c(script("stats_mean.py"), script("stats_max.py")), jobs = 2))

# A pipeline: each stage's result is the next stage's input, in place.
cat("\nrun_python_pipeline(v, c('scale.py', 'square.py', 'total.py')):\n")
print(run_python_pipeline(v, c(script("scale.py"), script("square.py"), script("total.py"))))

# Errors are R conditions that carry Python's exception.
res <- tryCatch(run_python(v, script("sum.py"), "uint8"), pyrmap_error = function(e) e)
cat("\nAsking for uint8 of", deparse(v), "works:", format(res), "\n")
res <- tryCatch(run_python(c(1.5, 2), script("sum.py"), "int32"), pyrmap_error = function(e) e)
cat("Asking for int32 of c(1.5, 2) is refused (", class(res)[1], "):", conditionMessage(res), "\n")
