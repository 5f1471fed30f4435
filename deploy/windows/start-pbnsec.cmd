@echo off
rem Starts pbnsec on this Windows machine; Task Scheduler runs it at startup.
rem See "Running on a Windows office machine" in the README. Edit the settings below.
rem Everything the app prints is appended to instance\pbnsec.log,
rem the Owner's one-time password too on the very first start.

rem The pbnsec folder is two levels up from this file, which lives in deploy\windows.
cd /d "%~dp0..\.."

rem 0.0.0.0 lets the other office PCs connect; open the port in Windows Firewall.
set PBNSEC_HOST=0.0.0.0
set PBNSEC_PORT=8000
rem No proxy in front: the app sees each PC's own address.
set PBNSEC_TRUSTED_PROXIES=0
rem No proxy, so no other web tools behind pbnsec's gate: no second port to open (README, Protect your other web tools).
set PBNSEC_GATE_PORT=off
set PBNSEC_SECURE_COOKIES=0
set PBNSEC_LOG_LEVEL=INFO

if not exist instance mkdir instance
".venv\Scripts\flask.exe" --app app serve >> instance\pbnsec.log 2>&1
