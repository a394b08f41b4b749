#!/usr/bin/env bash
# Install WordNet 3.0 for nltk from Debian's packages, for machines that reach a Debian mirror but not
# nltk's own download server (raw.githubusercontent.com).
#
# nltk reads WordNet only as a corpus directory on its data path (<dir>/corpora/wordnet/ with data.*,
# index.*, *.exc, index.sense, cntlist.rev and lexnames), so this script
#   1. apt-installs wordnet-base and wordnet-sense-index (skipped when both are installed),
#   2. copies their /usr/share/wordnet files into ${NLTK_DATA:-$HOME/nltk_data}/corpora/wordnet,
#   3. writes `lexnames`, which Debian does not ship (the table of lexnames(5WN)),
#   4. checks that nltk finds synsets.
# nltk refuses data directories or files that another account may write, so everything is made go-w.
# Needs root (or sudo) for apt; nltk itself must already be installed (pip install nltk); PYTHON picks the
# interpreter that checks it (default: python).
set -euo pipefail

DEST="${NLTK_DATA:-$HOME/nltk_data}"
DEST="${DEST%%:*}"  # NLTK_DATA may list several directories: install into the first
WORDNET="$DEST/corpora/wordnet"
SRC=/usr/share/wordnet
PACKAGES=(wordnet-base wordnet-sense-index)

as_root() {
    if [ "$(id -u)" -eq 0 ]; then "$@"; else sudo "$@"; fi
}

installed() {
    dpkg-query -W -f='${Status}' "$1" 2>/dev/null | grep -q "install ok installed"
}

missing=()
for pkg in "${PACKAGES[@]}"; do
    installed "$pkg" || missing+=("$pkg")
done
if [ "${#missing[@]}" -gt 0 ]; then
    echo "installing ${missing[*]}"
    if ! apt-cache show "${missing[0]}" >/dev/null 2>&1; then
        as_root apt-get update -qq
    fi
    as_root env DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends "${missing[@]}"
else
    echo "${PACKAGES[*]} already installed"
fi

umask 022
mkdir -p "$WORDNET"
chmod go-w "$DEST" "$DEST/corpora" "$WORDNET"
for f in data.noun data.verb data.adj data.adv index.noun index.verb index.adj index.adv \
         noun.exc verb.exc adj.exc adv.exc index.sense cntlist.rev; do
    cp "$SRC/$f" "$WORDNET/$f"
done

# lexnames(5WN): file number, lexicographer file name, syntactic category (1 noun, 2 verb, 3 adj, 4 adv).
cat > "$WORDNET/lexnames" <<'EOF'
00	adj.all	3
01	adj.pert	3
02	adv.all	4
03	noun.Tops	1
04	noun.act	1
05	noun.animal	1
06	noun.artifact	1
07	noun.attribute	1
08	noun.body	1
09	noun.cognition	1
10	noun.communication	1
11	noun.event	1
12	noun.feeling	1
13	noun.food	1
14	noun.group	1
15	noun.location	1
16	noun.motive	1
17	noun.object	1
18	noun.person	1
19	noun.phenomenon	1
20	noun.plant	1
21	noun.possession	1
22	noun.process	1
23	noun.quantity	1
24	noun.relation	1
25	noun.shape	1
26	noun.state	1
27	noun.substance	1
28	noun.time	1
29	verb.body	2
30	verb.change	2
31	verb.cognition	2
32	verb.communication	2
33	verb.competition	2
34	verb.consumption	2
35	verb.contact	2
36	verb.creation	2
37	verb.emotion	2
38	verb.motion	2
39	verb.perception	2
40	verb.possession	2
41	verb.social	2
42	verb.stative	2
43	verb.weather	2
44	adj.ppl	3
EOF
chmod -R go-w "$WORDNET"

echo "WordNet copied to $WORDNET; checking with nltk"
"${PYTHON:-python}" -c "from nltk.corpus import wordnet; print(wordnet.synsets('movie'))"
