"""Pictures people look at: training curves, prediction grids."""
