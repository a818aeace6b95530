#!/usr/bin/env bash
# Rewrites citations of the outside product specification ("SPEC §4.7") into
# citations of the repo's own design document ("design.md §Quarantine"), and
# references to integration suites by their old names into the current ones
# (docs/design.md §Testing). Idempotent: a second run changes nothing.
#
#   docs/cite-map.sh PATH...      files or folders (searched recursively,
#                                 skipping target/ and .git/)
#
# Branches that were open while the citations were replaced can merge and
# then run it over what they touched. The table of old numbers to section
# names is docs/design.md §Citation map; keep the two in step. Lines it could
# not map keep their "SPEC §" and are listed at the end (exit status 1).
# Run `cargo fmt --all` afterwards: a longer citation inside a string literal
# can push a call over the line width.
set -euo pipefail

self=$(realpath "$0")

# Old section number -> design.md section, subsections before their parents.
map=(
  "4\.1:Isolated mode" "4\.2:Compat mode" "4\.3:Playground mode" "4\.4:Masquerade"
  "4\.5:Classification" "4\.6:Statics" "4\.7:Quarantine"
  "6\.1:Routes" "6\.2:Aliases" "6\.3:Firewall" "6\.4:Reconcile"
  "10:Control" "11:Signals" "12:Privileges" "13:Logging" "14:Performance"
  "1:Deployment" "2:Command line" "3:Auto-detection" "4:Modes" "5:Protocol"
  "6:Kernel state" "7:Persistence" "8:Hooks" "9:Datapath"
)

# Old suite name -> new (design.md §Testing), as used in `--test NAME`.
suites=(
  rfc2131_4_3_1_discover:dhcp_discover rfc2131_4_3_2_request:dhcp_request
  rfc2131_4_3_4_release:dhcp_release rfc2131_4_3_5_inform:dhcp_inform
  spec_5_options:dhcp_options spec_4_2_compat:mode_compat
  spec_4_3_playground:mode_playground spec_4_5_classification:mode_classification
  spec_4_6_statics:pool_statics spec_4_7_quarantine:pool_quarantine
  firewall:kernel_firewall reconcile:kernel_reconcile durability:persist_durability
  lease_file:persist_lease_file control:control_diagnostics metrics:control_metrics
  flood:xdp_flood foundation:daemon_foundation hooks:daemon_hooks
  privileges:daemon_privileges hostile_guest:daemon_hostile_guest
)

M='§@' # marks a section number still to be translated
names=""
script=(
  # Phrases where the generic rule below would read badly or point too broadly.
  -e 's/SPEC §5 commit order, §6, §7/design.md §Commit order, §Kernel state, §Persistence/g'
  -e 's/the commit order of SPEC §5 holds/the commit order (design.md §Commit order) holds/g'
  -e 's/SPEC §5 "Commit"/design.md §Commit order/g'
  -e 's/A commit follows SPEC §5/A commit follows design.md §Commit order/g'
  -e 's/then ACK \(SPEC §5\)/then ACK (design.md §Commit order)/g'
  -e 's/SPEC §5 options in OFFER\/ACK/Options in OFFER\/ACK (design.md §Options)/g'
  -e 's/per-mode options of SPEC §5/per-mode options of design.md §Options/g'
  -e 's/and SPEC §5 admission rules/and the input rules of design.md §Protocol/g'
  -e 's/SPEC §4\.1–§4\.3/design.md §Modes/g'
  -e 's/\(SPEC §4–§5 tests\)/(tests of design.md §Modes, §Protocol)/g'
  -e 's/and SPEC §4 address modes/and the address modes (design.md §Modes)/g'
  -e 's/^\/\/! SPEC §4 address modes,/\/\/! Address modes (design.md §Modes),/'
  -e 's/SPEC §4\.2 compat \/30 micro-segments/Compat \/30 micro-segments (design.md §Compat mode)/g'
  -e 's/SPEC §4\.3 playground block/The playground block (design.md §Playground mode)/g'
  -e 's/SPEC §4\.4\/§4\.5 classification/Classification (design.md §Classification, §Masquerade)/g'
  -e 's/SPEC §4\.6 static entries/Static entries (design.md §Statics)/g'
  -e 's/SPEC §7 grace/design.md §Persistence, grace/g'
  -e 's/append-only journal \(SPEC §7\)/append-only journal (design.md §Lease file, §Persistence)/g'
  -e 's/SPEC §9 end to end/design.md §Admission, end to end/g'
  -e 's/SPEC §9 (`--xdp off`)/design.md §Datapath, \1/g'
  -e 's/request validation \(SPEC §9\)/request validation (design.md §Admission)/g'
  -e 's/validated DHCP requests \(SPEC §9\)/validated DHCP requests (design.md §Admission)/g'
  -e 's/The checks of SPEC §9/The checks of design.md §Admission/g'
  -e 's/(`--xdp off` )\(SPEC §9\)/\1(design.md §Admission)/g'
  -e 's/reach the engine \(SPEC §9\)/reach the engine (design.md §Admission)/g'
  -e 's/loses a MAC \(SPEC §9\)/loses a MAC (design.md §Admission)/g'
  -e 's/SPEC §10 control plane/The control plane (design.md §Control)/g'
  -e 's/SPEC §10 access and live blocking/Control access and live blocking (design.md §Control)/g'
  -e 's/SPEC §10 (`--metrics-listen`)/design.md §Metrics, \1/g'
  -e 's/(`--metrics-listen[^`]*` )\(SPEC §10\)/\1(design.md §Metrics)/g'
  -e 's/\(SPEC: 8\)/(design.md §Hooks: 8)/g'
  -e 's/\(SPEC: 30 s\)/(design.md §Hooks: 30 s)/g'
  -e 's/SPEC defaults:/Defaults of design.md §Hooks:/g'
  -e 's/\(SPEC: no panic on anything from the network\)/(design.md §Protocol: no panic on anything from the network)/g'
  -e 's/one file per RFC\/SPEC section/named `<area>_<topic>.rs`, see docs\/design.md §Testing/g'
  # Numbers cited without the word SPEC.
  -e 's/its host routes \(§6\.1\)/its host routes (design.md §Routes)/g'
  -e 's/top of the pool \(§4\.1\)/top of the pool (design.md §Isolated mode)/g'
  -e 's/unicast to ciaddr \(§4\.1\)/unicast to ciaddr (RFC 2131 §4.1)/g'
  # Generic: mark every cited number, then translate marks until none is
  # left, following lists like "§6.4, §6.1" and "§4.3/§4.6".
  -e "s/SPEC §([0-9])/design.md $M\\1/g"
  -e ':next'
)
for m in "${map[@]}"; do
  num=${m%%:*} name=${m#*:}
  # A number ends where no further digit or ".digit" follows.
  script+=(-e "s/$M$num(\\.?[^.0-9]|\\.?\$)/§$name\\1/g")
  names+="${names:+|}$name"
done
script+=(
  -e "s/§($names)(, |\\/|–)§([0-9])/§\\1, $M\\3/g"
  -e 't next'
  # Numbers this table does not know: back to their original form.
  -e "s/design\\.md $M/SPEC §/g" -e "s/$M/§/g"
)
for s in "${suites[@]}"; do
  old=${s%%:*} new=${s#*:}
  script+=(-e "s/--test $old([^_a-z0-9]|\$)/--test $new\\1/g")
  # `suite.rs` and `suite::test` too, unless the name is also a module of
  # the daemon (control, metrics, reconcile, hooks): those only by --test.
  case $old in control | metrics | reconcile | hooks) continue ;; esac
  script+=(-e "s/\`$old::/\`$new::/g" -e "s/\`$old\\.rs\`/\`$new.rs\`/g")
done

[ $# -gt 0 ] || { echo "usage: $0 PATH..." >&2; exit 2; }
files=$(grep -rlIE --exclude-dir=target --exclude-dir=.git \
  'SPEC|§|--test |::|\.rs' "$@" || true)
changed=0
for f in $files; do
  [ "$(realpath "$f")" = "$self" ] && continue
  before=$(cksum <"$f")
  sed -E -i "${script[@]}" "$f"
  [ "$(cksum <"$f")" = "$before" ] || { echo "rewrote $f"; changed=$((changed + 1)); }
done
echo "cite-map: $changed file(s) changed"
left=$(grep -rnIE --exclude-dir=target --exclude-dir=.git 'SPEC ?(§|:)|SPEC defaults' "$@" |
  grep -v "cite-map.sh" || true)
if [ -n "$left" ]; then
  echo "cite-map: citations left unmapped:" >&2
  echo "$left" >&2
  exit 1
fi
