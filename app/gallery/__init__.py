"""The gallery: employees and their reference templates in SQL, plus the in-memory search index."""
