# Sourced by the GPU scripts: finds the nsys 2025.3.1 that ships inside Nsight Compute on
# the GPU machine, unpacks libdw/libelf for its QdstrmImporter (.gpu/deb, brought from the
# CPU machine) and exports NSYS (and NSYS_AGENT_NSYS) for the agent.
NSYS=$(find /opt/nvidia -name nsys -type f -path '*target-linux-x64*' 2>/dev/null | sort | tail -n 1)
[ -n "$NSYS" ] || { echo "no nsys under /opt/nvidia"; exit 1; }
mkdir -p /tmp/dw
for f in .gpu/deb/*.deb; do dpkg -x "$f" /tmp/dw; done
export LD_LIBRARY_PATH=/tmp/dw/usr/lib/x86_64-linux-gnu${LD_LIBRARY_PATH:+:$LD_LIBRARY_PATH}
export NSYS NSYS_AGENT_NSYS=$NSYS
"$NSYS" --version
