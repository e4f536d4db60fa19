# `liquid-pilot` on PATH after sourcing a colcon install (listed in colcon.pkg; the same as path.dsv)
_colcon_prepend_unique_value PATH "$COLCON_CURRENT_PREFIX/share/liquid_pilot/bin"
