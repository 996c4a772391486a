"""The file processor: text, metadata and media type of every new file."""
