"""Tests of the local tooling itself: the emulators and the embedded stack."""
