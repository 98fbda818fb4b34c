# Sourced by bin/* scripts: run a named stage, print its duration, remember it for the summary.
STAGE_TIMES=()

stage() {
  local name=$1; shift
  local start=$SECONDS
  echo
  echo "==> $name"
  if "$@"; then
    STAGE_TIMES+=("$(printf '%-34s %4ss  ok' "$name" $((SECONDS - start)))")
  else
    local rc=$?
    STAGE_TIMES+=("$(printf '%-34s %4ss  FAILED (exit %s)' "$name" $((SECONDS - start)) "$rc")")
    stage_summary
    return "$rc"
  fi
}

stage_summary() {
  echo
  echo "==> stage times"
  printf '    %s\n' "${STAGE_TIMES[@]}"
}
