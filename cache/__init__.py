"""Caches for rendered images, decoded frames and query answers (memory LRU and Redis)."""
