"""Review: a reviewer's own queue, and accept / reject with a comment / correct."""
