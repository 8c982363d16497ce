# Sourced by the TorchServe container's entrypoint (POSIX sh): how it reads its environment.
# serving.settings.env_bool reads the same variables for the registrar with the same rule, so
# the two can never disagree (e.g. TS_TOKEN_AUTH=False once left TorchServe's auth on while the
# registrar called it off).

# signflow_bool NAME DEFAULT: print "true" or "false" for variable NAME (true/false in any case;
# unset or empty: DEFAULT). Anything else exits 2 with a message naming the variable, before
# TorchServe starts.
signflow_bool() {
  eval "signflow_raw=\${$1:-}"
  # Ends trimmed and lower-cased, like serving.settings.env_bool.
  signflow_value=$(printf '%s\n' "$signflow_raw" | sed 's/^[[:space:]]*//; s/[[:space:]]*$//' |
    tr '[:upper:]' '[:lower:]')
  case "${signflow_value:-$2}" in
  true) echo true ;;
  false) echo false ;;
  *)
    echo "signflow-torchserve: $1: must be true or false (got ${signflow_raw})" >&2
    exit 2
    ;;
  esac
}
