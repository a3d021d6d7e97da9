"""The catalog: SQLite through SQLAlchemy, Alembic migrations, the FAISS index, queries.

It stores and answers; it never analyses audio.
"""
