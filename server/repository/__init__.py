"""Database work as keyword-only functions over a Session; routes and the trainer call these,
and raise nothing but `server.errors` for what a client got wrong."""
