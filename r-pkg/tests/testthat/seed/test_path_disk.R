library(pyrmap)

input_data <- seq(1:10)
python_script_path_sum <- "sum.py"
python_script_path_num_plus_one <- "num_plus_one.py"

result <- run_python(input_data, python_script_path_sum, path = "DISK")
results <- run_python_shared_data(input_data, c(python_script_path_sum, python_script_path_num_plus_one),
                                  path = "DISK")
pipeline <- run_python_pipeline(input_data, c(python_script_path_sum, python_script_path_num_plus_one),
                                path = "RAM", required_intermediate_results = TRUE)

print(result)
