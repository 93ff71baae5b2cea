"""Consumer side: LSL discovery, clock alignment, ring buffers and sliding windows."""
