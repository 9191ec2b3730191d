"""The catalog: an index of the market's listings and their documents, searchable."""
