"""The story corpus: TinyStories-Instruct-style records — generated procedurally, or read from the real files —
and the Twist deletion protocols that transform them (Jain et al. §5.2, App. F)."""
