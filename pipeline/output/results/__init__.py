"""The results table: written from the state (``write``), its lines decoded from events (``lines``), and
the file updated row group by row group (``table``, ``parquet_splice``).
"""
