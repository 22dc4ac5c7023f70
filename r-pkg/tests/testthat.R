library(testthat)
library(pyrmap)

test_check("pyrmap")
