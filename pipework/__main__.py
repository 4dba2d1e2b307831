from pipework.cli import main

main()
