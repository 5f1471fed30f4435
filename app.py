from pbnsec import create_app

app = create_app()
