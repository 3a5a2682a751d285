"""Media bytes: the MediaStore protocol, a local-directory backend and an S3 backend."""
