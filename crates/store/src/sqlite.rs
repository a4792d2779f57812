// implemented by the store helper
