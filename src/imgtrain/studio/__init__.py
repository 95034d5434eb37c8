"""imgtrain studio: the designer's pipeline in a browser (server, run registry, worker)."""
