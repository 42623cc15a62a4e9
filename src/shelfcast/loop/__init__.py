"""The loop on the local stack: the main job (`shelfcast run`) runs the flows over delivered sales files."""
