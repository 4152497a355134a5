"""Operations: health, opt-out administration, analytics, the app webhook."""
