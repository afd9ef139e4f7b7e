"""`python -m align_trainer --config FILE`: see align_trainer.main."""

from align_trainer.main import main

if __name__ == "__main__":
    main()
