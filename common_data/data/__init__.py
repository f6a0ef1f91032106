"""The datasets: download, read the official files, sample, encode, the base corpus."""
