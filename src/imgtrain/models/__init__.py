"""Models: the architecture catalog, untrained and trained model directories, and export."""
