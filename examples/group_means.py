"""A data frame in, a data frame out: the mean of every numeric column per
level of the factor column `g` (R's data.frame arrives as a
pandas.DataFrame; the result goes back to R as a data.frame).

    run_python(df, "examples/group_means.py", fun = "group_means")
"""
from pyrmap import process_via_mmap


def group_means(df):
    return df.groupby("g", observed=True).mean(numeric_only=True).reset_index()


if __name__ == "__main__":
    process_via_mmap(group_means)()
