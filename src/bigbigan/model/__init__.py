"""The networks: building blocks, the five BigBiGAN networks, offline wrappers, exact rewrites."""
