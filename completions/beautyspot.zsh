#compdef beautyspot

_beautyspot_completion() {
  eval $(env _TYPER_COMPLETE_ARGS="${words[1,$CURRENT]}" _BEAUTYSPOT_COMPLETE=complete_zsh beautyspot)
}

compdef _beautyspot_completion beautyspot
