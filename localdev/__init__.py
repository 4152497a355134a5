"""The local stack: Azurite launcher, ACS emulator and function host. Never deployed."""
