"""DICOMweb over HTTP: a raw client that keeps what a high-level client hides (status, headers, challenges, multipart framing), bounded like every network read."""
