"""The command line: `samplegan-tune train | generate | evaluate | search | ...`."""
