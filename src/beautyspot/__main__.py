from beautyspot.cli.entry import main

main()
