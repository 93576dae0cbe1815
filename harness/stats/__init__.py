"""The run's statistics: pure functions over arrays and DataFrames, no I/O.

    market         the equal-weighted market index from per-chunk sums; outlier bars
    benchmark      expected returns: the market, or a market model fitted per symbol
    summary        a detector's summary rows, event-time paths, score quantiles
    inference      two-way clustered tests, Holm and Benjamini-Hochberg adjustments
    distributions  Student t cdf and quantiles
"""
