"""``python -m gleitzeit_ollama.sim --port P --models a,b ...``"""

from gleitzeit_ollama.sim.cli import main

if __name__ == "__main__":
    main()
