"""Runware's API: the wire format as pure functions (``wire``), and the client that sends it (``client``)
over lean HTTP/1.1 connections (``http_lean``) or httpx's pools (``http_shards``).
"""
