"""HTTP routes, one router per resource under /api/v1; each route is a thin call into
`server.repository` and a response schema."""
