"""dropstack's CrossGuard policy pack: pure rules (``rules``) wrapped as policies (``policies``)."""
