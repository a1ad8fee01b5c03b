"""The learner service: FastAPI over the SQL episode buffer, trainers and the dashboard."""
