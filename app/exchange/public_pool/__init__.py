"""A book's public time pool (公益时间池): donations to it and grants from it."""
