"""The pure core: no Flask, no peewee, no I/O. IP address rules (`iprules`), which IP made a request
(`clientip`), the access decision and its status words (`decision`), and text checks (`text`). Tested with unit
and property tests only."""
