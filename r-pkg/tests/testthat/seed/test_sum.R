library(pyrmap)

input_data <- c(1, 6, 14, 7)
python_script_path_sum <- "sum.py"

result <- run_python(
    data = input_data,
    python_script_path=python_script_path_sum,
    dtype="uint8"
)

print(result)
