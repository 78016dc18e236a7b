"""Who we are on the wire and in the files we write (PS3.7 D.3.3.2, PS3.10 7.1).

The Implementation Class UID is the workstation's own, under the UUID-derived root 2.25
(PS3.5 B.2), so no organisation's registered root is borrowed. It goes in every association we
open or accept and in the file meta of every file we write.
"""

IMPLEMENTATION_CLASS_UID = "2.25.168142107779730028491412183530531808223"
#: At most 16 characters (SH).
IMPLEMENTATION_VERSION_NAME = "WORKSTATION_0_2"
