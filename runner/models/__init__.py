"""Model stages: the lock file, the model cache, fetching and converting, inference."""
