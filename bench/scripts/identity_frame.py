"""B9: the identity over a data frame (pandas.DataFrame or pyrmap.Frame)."""


def identity(x):
    return x
