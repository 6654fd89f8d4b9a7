from tsq.cli import main

main()
